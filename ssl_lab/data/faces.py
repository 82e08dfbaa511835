"""Readers for the real face-landmark benchmarks, in their official on-disk formats.

Files read, relative to each dataset's root, and the ``data_scripts/`` script that makes them:

* CelebA (``prepare_celeba_mafl.py``): ``Anno/list_landmarks_align_celeba.txt``,
  ``Eval/list_eval_partition.txt``, images in ``Img/img_align_celeba/`` (or
  ``img_align_celeba/``).
* MAFL (``prepare_celeba_mafl.py``): ``MAFL/training.txt``, ``MAFL/testing.txt`` (CelebA
  image names; landmarks from the CelebA file).  Unaligned MAFL adds CelebA in the wild:
  ``Anno/list_landmarks_celeba.txt``, ``Anno/list_bbox_celeba.txt``, ``Img/img_celeba/``.
* AFLW_M (``prepare_aflw.py``): test ``MTFL/testing.txt`` (MTFL lines
  ``path x1..x5 y1..y5 [attributes]``, 1-based); train
  ``aflw_cropped/facedata_cropped.csv`` (Thewlis' 10,122 cropped faces, rows with set 1).
* AFLW_R (``prepare_aflw.py``): ``aflw_{train,test}_images.txt``,
  ``aflw_{train,test}_keypoints.mat`` (``gt`` [N, 5, 2] stored as (y, x); ``hw``), images
  in ``output/``.
* 300-W (``prepare_300w.py``): ``{lfpw,helen}/{trainset,testset}/``, ``afw/``, ``ibug/``
  (each image beside its ``.pts``, 1-based) and ``Bounding Boxes/bounding_boxes_<subset>.mat``
  (``bb_ground_truth`` = [xmin ymin xmax ymax], 1-based).

Every parser returns landmarks as float ``[K, 2]`` (x, y) **0-based** pixel coordinates of
the image file: the 1-based formats (MTFL, the cropped-AFLW csv, ``.pts``, the 300-W boxes)
are shifted by one, CelebA and AFLW_R are taken as stored (as DVE and the thesis' code do).  Every dataset is a torch
:class:`LandmarkDataset` whose items are dicts::

    {"image": float32 [3, H, W] in [0, 1], "landmarks": float32 [K, 2] (x, y) 0-based in
     the returned image, "visible": bool [K], "name": str (path relative to the root)}

Points that are not annotated (non-finite in the file) have ``visible`` False and
landmarks 0.  ``transform(image, landmarks) -> (image, landmarks)`` is applied last, e.g.
``transform=thesis_crop``: the thesis' (and DVE's) evaluation protocol, resize to 136 x 136
then a central 96 x 96 crop.  ``LandmarkDataset.eye_idx`` names the two points whose
distance is the inter-ocular normaliser (eye centres for 5 points, outer eye corners
36/45 for 68).

A missing file raises :class:`DatasetNotFound` (a ``FileNotFoundError``) and a file that
does not parse :class:`MalformedDataset` (a ``ValueError``, with file and line number);
both messages name the ``data_scripts/`` script that makes the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .images import EXTENSIONS, DatasetNotFound, MalformedDataset, hint, load_image, require

__all__ = [
    "DatasetNotFound", "MalformedDataset", "LandmarkDataset", "Sample",
    "read_celeba_table", "read_celeba_landmarks", "read_celeba_bboxes", "read_celeba_partition",
    "read_name_list", "read_mtfl", "read_aflw_cropped", "read_aflw_r", "read_pts",
    "read_300w_boxes", "crop_box", "thesis_crop",
    "celeba_unlabelled", "mafl", "mafl_unaligned", "aflw_m", "aflw_r", "w300", "w300_counts",
    "landmark_benchmark", "W300_SUBSETS", "W300_EXPECTED", "EXPECTED_SIZES", "DEFAULT_DIRS",
]

CELEBA, AFLW, W300 = "prepare_celeba_mafl.py", "prepare_aflw.py", "prepare_300w.py"
CELEBA_LANDMARKS = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y " \
                   "leftmouth_x leftmouth_y rightmouth_x rightmouth_y".split()
CELEBA_BBOX = "x_1 y_1 width height".split()

# 300-W: the split of Ren et al. (3000 fps, 2014) used by DVE and the thesis.
W300_SUBSETS = {
    "train": ("lfpw/trainset", "helen/trainset", "afw"),
    "common": ("lfpw/testset", "helen/testset"),
    "challenging": ("ibug",),
}
W300_SUBSETS["test"] = W300_SUBSETS["common"] + W300_SUBSETS["challenging"]
W300_EXPECTED = {"lfpw/trainset": 811, "helen/trainset": 2000, "afw": 337,
                 "lfpw/testset": 224, "helen/testset": 330, "ibug": 135}

# Sizes of the full benchmarks (thesis Sec. 3.3); the prepare scripts compare against them.
EXPECTED_SIZES = {
    ("mafl", "train"): 19_000, ("mafl", "test"): 1_000,
    ("aflw_m", "train"): 10_122, ("aflw_m", "test"): 2_995,
    ("aflw_r", "train"): 10_122, ("aflw_r", "test"): 2_991,
    ("300w", "train"): 3_148, ("300w", "test"): 689,
}
# Where each benchmark's root lives under a data root (what the prepare scripts write).
DEFAULT_DIRS = {"celeba": "celeba", "mafl": "celeba", "mafl_unaligned": "celeba",
                "aflw_m": "aflw_m", "aflw_r": "aflw_r", "300w": "300w"}


# --------------------------------------------------------------------------- parsers

def _rows(path: str | Path, script: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split tokens) of every non-blank line."""
    with open(require(path, script)) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line.split()


def _bad(path, lineno: int | None, msg: str, script: str) -> MalformedDataset:
    where = f"{path}, line {lineno}" if lineno else str(path)
    return MalformedDataset(f"{where}: {msg}; {hint(script)}")


def _numbers(tokens: list[str], path, lineno: int, script: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens])
    except ValueError:
        raise _bad(path, lineno, f"expected numbers, got {' '.join(tokens)!r}", script) from None


def read_celeba_table(path: str | Path, columns: list[str], script: str = CELEBA
                      ) -> dict[str, np.ndarray]:
    """A CelebA ``Anno/list_*_celeba.txt`` file: line 1 the row count, line 2 the column
    names (``image_id`` first or omitted), then ``name v1 v2 ...``; {name: values}."""
    rows = _rows(path, script)
    lineno, count = next(rows, (1, []))
    if len(count) != 1 or not count[0].isdigit():
        raise _bad(path, lineno, f"expected the number of images, got {' '.join(count)!r}",
                   script)
    lineno, header = next(rows, (2, []))
    if header[:1] == ["image_id"]:
        header = header[1:]
    if header != columns:
        raise _bad(path, lineno, f"header should be {' '.join(columns)!r}, got {' '.join(header)!r}",
                   script)
    table = {}
    for lineno, tokens in rows:
        if len(tokens) != len(columns) + 1:
            raise _bad(path, lineno, f"expected a name and {len(columns)} numbers, "
                                     f"got {len(tokens)} fields", script)
        table[tokens[0]] = _numbers(tokens[1:], path, lineno, script)
    if len(table) != int(count[0]):
        raise _bad(path, None, f"line 1 announces {count[0]} images but {len(table)} follow", script)
    return table


def read_celeba_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """``list_landmarks[_align]_celeba.txt`` -> {name: [5, 2]} (eyes, nose, mouth corners)."""
    return {k: v.reshape(5, 2) for k, v in read_celeba_table(path, CELEBA_LANDMARKS).items()}


def read_celeba_bboxes(path: str | Path) -> dict[str, np.ndarray]:
    """``list_bbox_celeba.txt`` -> {name: [x_1, y_1, width, height]}."""
    return read_celeba_table(path, CELEBA_BBOX)


def read_celeba_partition(path: str | Path) -> dict[str, int]:
    """``Eval/list_eval_partition.txt`` (``000001.jpg 0``) -> {name: 0 train / 1 val / 2 test}."""
    out = {}
    for lineno, tokens in _rows(path, CELEBA):
        if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
            raise _bad(path, lineno, f"expected '<image> 0|1|2', got {' '.join(tokens)!r}", CELEBA)
        out[tokens[0]] = int(tokens[1])
    return out


def read_name_list(path: str | Path, script: str = CELEBA) -> list[str]:
    """A list of image names, one per line (MAFL ``training.txt``/``testing.txt``); any
    further fields on a line are ignored."""
    return [tokens[0] for _, tokens in _rows(path, script)]


def read_mtfl(path: str | Path, script: str = AFLW) -> list[tuple[str, np.ndarray]]:
    """An MTFL list (``path x1..x5 y1..y5 [gender smile glasses pose]``, 1-based pixels,
    Windows separators) -> [(relative path, [5, 2] 0-based)]."""
    out = []
    for lineno, tokens in _rows(path, script):
        if len(tokens) < 11:
            raise _bad(path, lineno, f"expected 'path x1..x5 y1..y5', got {len(tokens)} fields",
                       script)
        xy = _numbers(tokens[1:11], path, lineno, script).reshape(2, 5).T - 1
        out.append((tokens[0].replace("\\", "/"), xy))
    return out


def read_aflw_cropped(path: str | Path, script: str = AFLW) -> list[tuple[str, int, np.ndarray]]:
    """Thewlis' ``facedata_cropped.csv`` (header row; columns ``crop_file`` and ``set``;
    fields 5-14 are x1, y1, ..., x5, y5, 1-based, as DVE reads them) ->
    [(crop_file, set, [5, 2] 0-based)]."""
    require(path, script)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]] if rows else []
    if "crop_file" not in header or "set" not in header or len(header) < 14:
        raise _bad(path, 1, f"header should name crop_file and set and have >= 14 columns, "
                            f"got {','.join(header)!r}", script)
    i_file, i_set = header.index("crop_file"), header.index("set")
    out = []
    for lineno, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise _bad(path, lineno, f"expected {len(header)} fields, got {len(row)}", script)
        values = _numbers(row[4:14] + [row[i_set]], path, lineno, script)
        out.append((row[i_file].strip(), int(values[-1]), values[:10].reshape(5, 2) - 1))
    return out


def read_aflw_r(images_txt: str | Path, keypoints_mat: str | Path, script: str = AFLW
                ) -> list[tuple[str, np.ndarray]]:
    """AFLW_R: ``aflw_<split>_images.txt`` (one name per line) and ``aflw_<split>_keypoints
    .mat`` whose ``gt`` [N, 5, 2] is stored as (y, x) -> [(name, [5, 2] (x, y))]."""
    from scipy.io import loadmat

    names = read_name_list(images_txt, script)
    try:
        gt = np.asarray(loadmat(require(keypoints_mat, script))["gt"], dtype=np.float64)
    except (KeyError, ValueError, TypeError) as err:
        raise _bad(keypoints_mat, None, f"expected a variable 'gt' of shape [N, 5, 2] ({err})",
                   script) from None
    if gt.ndim != 3 or gt.shape[1:] != (5, 2) or len(gt) != len(names):
        raise _bad(keypoints_mat, None, f"'gt' has shape {gt.shape}, expected "
                                        f"[{len(names)}, 5, 2] to match {images_txt}", script)
    return list(zip(names, gt[:, :, ::-1].copy()))


def read_pts(path: str | Path, script: str = W300) -> np.ndarray:
    """A 300-W ``.pts`` file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``,
    ``}``; 1-based) -> [N, 2] 0-based."""
    rows = list(_rows(path, script))

    def expect(i: int, ok: Callable[[list[str]], bool], what: str) -> None:
        if i < len(rows) and ok(rows[i][1]):
            return
        lineno = rows[i][0] if i < len(rows) else (rows[-1][0] + 1 if rows else 1)
        got = repr(" ".join(rows[i][1])) if i < len(rows) else "the end of the file"
        raise _bad(path, lineno, f"expected {what}, got {got}", script)

    expect(0, lambda t: t[:1] == ["version:"], "'version: 1'")
    expect(1, lambda t: len(t) == 2 and t[0] == "n_points:" and t[1].isdigit(), "'n_points: N'")
    expect(2, lambda t: t == ["{"], "'{'")
    n = int(rows[1][1][1])
    for i in range(3, 3 + n):
        expect(i, lambda t: len(t) == 2, f"'x y' (point {i - 2} of {n})")
    expect(3 + n, lambda t: t == ["}"], f"'}}' after {n} points")
    return np.stack([_numbers(t, path, lineno, script) for lineno, t in rows[3:3 + n]]) - 1


def read_300w_boxes(path: str | Path, script: str = W300) -> dict[str, np.ndarray]:
    """A 300-W ``bounding_boxes_<subset>.mat`` (a cell array ``bounding_boxes`` of structs
    ``imgName``, ``bb_detector``, ``bb_ground_truth``) -> {imgName: bb_ground_truth}, the
    box ``[xmin, ymin, xmax, ymax]`` in 1-based inclusive pixels, as stored."""
    from scipy.io import loadmat

    try:
        entries = np.atleast_1d(loadmat(require(path, script), squeeze_me=True,
                                        struct_as_record=False)["bounding_boxes"])
        boxes = {str(e.imgName): np.asarray(e.bb_ground_truth, dtype=np.float64) for e in entries}
    except (KeyError, AttributeError, ValueError, TypeError) as err:
        raise _bad(path, None, "expected a cell array 'bounding_boxes' of structs with imgName "
                               f"and bb_ground_truth ({type(err).__name__}: {err})", script) from None
    if any(b.shape != (4,) for b in boxes.values()):
        raise _bad(path, None, "every bb_ground_truth should be [xmin ymin xmax ymax]", script)
    return boxes


# --------------------------------------------------------------------------- geometry

def crop_box(image: torch.Tensor, landmarks: torch.Tensor, left: int, top: int, width: int,
             height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``image[:, top:top+height, left:left+width]``, zero-padded where the box leaves the
    image; landmarks shifted into the crop."""
    _, h, w = image.shape
    out = image.new_zeros(image.shape[0], height, width)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + width, w), min(top + height, h)
    if x1 > x0 and y1 > y0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = image[:, y0:y1, x0:x1]
    return out, landmarks - landmarks.new_tensor([left, top])


def thesis_crop(image: torch.Tensor, landmarks: torch.Tensor, resize: int = 136, crop: int = 96
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation protocol of the thesis and DVE: resize the (face-cropped) image to
    ``resize x resize`` (aspect ratio not kept, bilinear, antialiased), then take the central
    ``crop x crop``.  A point maps as ``x' = x * resize / W - (resize - crop) // 2`` (and
    likewise y with H), the scaling the thesis' code applies to keypoints."""
    _, h, w = image.shape
    image = F.interpolate(image[None], size=(resize, resize), mode="bilinear",
                          align_corners=False, antialias=True)[0].clamp_(0, 1)
    landmarks = landmarks * landmarks.new_tensor([resize / w, resize / h])
    offset = (resize - crop) // 2
    return crop_box(image, landmarks, offset, offset, crop, crop)


def _centred_box(cx: float, cy: float, width: float, height: float) -> tuple[int, int, int, int]:
    """Integer box of about ``width x height`` pixels whose centre is pixel position (cx, cy)."""
    w, h = max(1, round(width)), max(1, round(height))
    return round(cx - (w - 1) / 2), round(cy - (h - 1) / 2), w, h


# --------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class Sample:
    """One annotated image on disk; ``box`` (left, top, width, height) is cropped on load."""
    path: Path
    landmarks: np.ndarray  # [K, 2] (x, y) 0-based in the image file, NaN where not annotated
    name: str
    box: tuple[int, int, int, int] | None = None


Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LandmarkDataset(Dataset):
    """Annotated face images; see the module docstring for the item format."""

    def __init__(self, samples: list[Sample], transform: Transform | None = None,
                 eye_idx: tuple[int, int] = (0, 1), script: str = CELEBA):
        self.samples, self.transform, self.eye_idx, self.script = samples, transform, eye_idx, script

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        image = load_image(s.path, self.script)
        landmarks = torch.as_tensor(s.landmarks, dtype=torch.float32)
        visible = torch.isfinite(landmarks).all(1)
        if s.box is not None:
            image, landmarks = crop_box(image, landmarks, *s.box)
        if self.transform is not None:
            image, landmarks = self.transform(image, landmarks)
        landmarks = torch.where(visible[:, None], landmarks, torch.zeros(()))
        return {"image": image, "landmarks": landmarks, "visible": visible, "name": s.name}


def _folder(root: Path, candidates: tuple[str, ...], script: str) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    raise DatasetNotFound(f"expected the image folder {root / candidates[0]}; {hint(script)}")


def _check_split(split: str, allowed=("train", "test")) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(allowed)}; got {split!r}")


def _lookup(table: dict, names: list[str], table_file: Path, list_file: Path, script: str):
    missing = [n for n in names if n not in table]
    if missing:
        raise _bad(list_file, None, f"{len(missing)} names (first {missing[0]!r}) are not in "
                                    f"{table_file}", script)
    return [table[n] for n in names]


def _mafl_list(root: Path, split: str) -> Path:
    return root / "MAFL" / ("training.txt" if split == "train" else "testing.txt")


def mafl(root: str | Path, split: str = "train", transform: Transform | None = None
         ) -> LandmarkDataset:
    """MAFL (19,000 train / 1,000 test aligned CelebA faces, 5 points) under a CelebA root."""
    _check_split(split)
    root = Path(root)
    anno, names_file = root / "Anno" / "list_landmarks_align_celeba.txt", _mafl_list(root, split)
    landmarks, names = read_celeba_landmarks(anno), read_name_list(names_file)
    images = _folder(root, ("Img/img_align_celeba", "img_align_celeba"), CELEBA)
    points = _lookup(landmarks, names, anno, names_file, CELEBA)
    return LandmarkDataset([Sample(images / n, p, n) for n, p in zip(names, points)], transform)


def celeba_unlabelled(root: str | Path, transform: Transform | None = None,
                      partitions: tuple[int, ...] = (0,), exclude_mafl: str | None = "test"
                      ) -> LandmarkDataset:
    """The pretraining set: aligned CelebA images of the given ``Eval`` partitions (0 = the
    162,770 training images the thesis names) minus the MAFL test images
    (``exclude_mafl="all"`` also drops MAFL train, as DVE's loader does; None keeps both).
    Items carry the CelebA landmarks too; pretraining does not use them."""
    mafl_splits = {"test": ["test"], "all": ["train", "test"], None: []}
    if exclude_mafl not in mafl_splits:
        raise ValueError(f"exclude_mafl must be 'test', 'all' or None; got {exclude_mafl!r}")
    root = Path(root)
    anno, part_file = root / "Anno" / "list_landmarks_align_celeba.txt", root / "Eval" / "list_eval_partition.txt"
    landmarks, partition = read_celeba_landmarks(anno), read_celeba_partition(part_file)
    drop = {n for split in mafl_splits[exclude_mafl] for n in read_name_list(_mafl_list(root, split))}
    images = _folder(root, ("Img/img_align_celeba", "img_align_celeba"), CELEBA)
    names = [n for n, p in partition.items() if p in partitions and n not in drop]
    points = _lookup(landmarks, names, anno, part_file, CELEBA)
    return LandmarkDataset([Sample(images / n, p, n) for n, p in zip(names, points)], transform)


def mafl_unaligned(root: str | Path, split: str = "train", transform: Transform | None = None,
                   zoom: tuple[float, float] | None = None, seed: int = 0) -> LandmarkDataset:
    """Unaligned MAFL (thesis Sec. 3.4): the MAFL images taken from CelebA in the wild,
    cropped by the CelebA bounding box whose sides are scaled by a zoom-out factor drawn
    uniformly from ``zoom`` per image (default: 1-1.5 for train, 1-2 for test), seeded."""
    _check_split(split)
    root = Path(root)
    anno = root / "Anno" / "list_landmarks_celeba.txt"
    landmarks, boxes = read_celeba_landmarks(anno), read_celeba_bboxes(root / "Anno" / "list_bbox_celeba.txt")
    names = read_name_list(_mafl_list(root, split))
    images = _folder(root, ("Img/img_celeba", "img_celeba"), CELEBA)
    points = _lookup(landmarks, names, anno, _mafl_list(root, split), CELEBA)
    bbs = _lookup(boxes, names, root / "Anno" / "list_bbox_celeba.txt", _mafl_list(root, split), CELEBA)
    lo, hi = zoom or ((1.0, 1.5) if split == "train" else (1.0, 2.0))
    factors = np.random.default_rng(seed).uniform(lo, hi, len(names))
    samples = [Sample(images / n, p, n, _centred_box(x + (w - 1) / 2, y + (h - 1) / 2, w * z, h * z))
               for n, p, (x, y, w, h), z in zip(names, points, bbs, factors)]
    return LandmarkDataset(samples, transform, script=CELEBA)


def aflw_m(root: str | Path, split: str = "train", transform: Transform | None = None
           ) -> LandmarkDataset:
    """AFLW_M: test = the 2,995 AFLW faces of MTFL (``MTFL/testing.txt``); train = the 10,122
    cropped AFLW faces of Thewlis et al. (``aflw_cropped/facedata_cropped.csv``, set 1)."""
    _check_split(split)
    root = Path(root)
    if split == "test":
        base, rows = root / "MTFL", read_mtfl(root / "MTFL" / "testing.txt")
    else:
        base = root / "aflw_cropped"
        rows = [(f, p) for f, s, p in read_aflw_cropped(base / "facedata_cropped.csv") if s == 1]
    require(base, AFLW)
    return LandmarkDataset([Sample(base / f, p, f) for f, p in rows], transform, script=AFLW)


def aflw_r(root: str | Path, split: str = "train", transform: Transform | None = None
           ) -> LandmarkDataset:
    """AFLW_R (10,122 train / 2,991 test tighter AFLW crops of Thewlis et al.; DVE's
    ``aflw_release-2``), keypoints swapped from the stored (y, x) to (x, y)."""
    _check_split(split)
    root = Path(root)
    rows = read_aflw_r(root / f"aflw_{split}_images.txt", root / f"aflw_{split}_keypoints.mat")
    images = _folder(root, ("output",), AFLW)
    return LandmarkDataset([Sample(images / n, p, n) for n, p in rows], transform, script=AFLW)


def _w300_box_file(root: Path, subset: str) -> Path:
    return root / "Bounding Boxes" / f"bounding_boxes_{subset.replace('/', '_')}.mat"


def _w300_pairs(root: Path, subset: str) -> list[tuple[Path, Path | None]]:
    """(.pts file, its image or None) for every .pts in a subset folder, sorted."""
    pairs = []
    for pts in sorted((root / subset).glob("*.pts")):
        image = next((pts.with_suffix(e) for e in EXTENSIONS if pts.with_suffix(e).is_file()), None)
        pairs.append((pts, image))
    return pairs


def w300_counts(root: str | Path) -> dict[str, int]:
    """Annotated images (a ``.pts`` with its image) per 300-W subset folder, and the split
    totals ``train``/``common``/``challenging``/``test``: 3148/554/135/689 exactly when the
    full dataset is present (compare with :data:`W300_EXPECTED`)."""
    root = Path(root)
    counts = {s: sum(img is not None for _, img in _w300_pairs(root, s)) for s in W300_EXPECTED}
    for split, subsets in W300_SUBSETS.items():
        counts[split] = sum(counts[s] for s in subsets)
    return counts


def w300(root: str | Path, split: str = "train", transform: Transform | None = None,
         context: float = 100 / 52) -> LandmarkDataset:
    """300-W, 68 points: ``train`` (lfpw + helen trainsets + afw, 3148), ``test`` (689) =
    ``common`` (lfpw + helen testsets, 554) + ``challenging`` (ibug, 135).  Each face is
    cropped to a square centred on its ground-truth box, ``context`` times the box width
    (DVE: the face fills 52 of 100 px); ``context=None`` keeps the whole image."""
    _check_split(split, tuple(W300_SUBSETS))
    root = Path(root)
    samples = []
    for subset in W300_SUBSETS[split]:
        require(root / subset, W300)
        box_file = _w300_box_file(root, subset)
        boxes = read_300w_boxes(box_file) if context else {}
        for pts, image in _w300_pairs(root, subset):
            if image is None:
                raise DatasetNotFound(f"expected the image of {pts} (.jpg or .png); {hint(W300)}")
            box = None
            if context:
                if image.name not in boxes:
                    raise _bad(box_file, None, f"no box for {image.name}", W300)
                x0, y0, x1, y1 = boxes[image.name] - 1
                side = (x1 - x0 + 1) * context
                box = _centred_box((x0 + x1) / 2, (y0 + y1) / 2, side, side)
            samples.append(Sample(image, read_pts(pts), f"{subset}/{image.name}", box))
    return LandmarkDataset(samples, transform, eye_idx=(36, 45), script=W300)


def landmark_benchmark(name: str, data_root: str | Path, split: str = "train",
                       transform: Transform | None = None) -> LandmarkDataset:
    """``name`` in mafl / mafl_unaligned / aflw_m / aflw_r / 300w, read from
    ``data_root / DEFAULT_DIRS[name]``."""
    readers = {"mafl": mafl, "mafl_unaligned": mafl_unaligned, "aflw_m": aflw_m,
               "aflw_r": aflw_r, "300w": w300}
    if name not in readers:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(readers)}")
    return readers[name](Path(data_root) / DEFAULT_DIRS[name], split, transform)
