"""ssl_lab.data.faces on tiny fixtures written here in the benchmarks' official formats."""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_lab.data import faces
from ssl_lab.data.faces import DatasetNotFound, MalformedDataset

REPO = Path(__file__).resolve().parents[1]
HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
          "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")


def write_image(path: Path, w: int, h: int, colour=(200, 100, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), colour).save(path)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def celeba_points(i: int) -> np.ndarray:
    return np.array([[10, 12], [20, 12], [15, 18], [11, 24], [19, 24]]) + i


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def celeba(tmp_path) -> Path:
    """6 aligned images (32x40): partitions 0,0,0,0,1,2; MAFL train 1,2; MAFL test 3,5;
    plus the in-the-wild files (64x64 images, boxes) for unaligned MAFL."""
    root = tmp_path / "celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    rows = [f"{n} " + " ".join(str(int(v)) for v in celeba_points(i).ravel())
            for i, n in enumerate(names)]
    write_text(root / "Anno" / "list_landmarks_align_celeba.txt",
               f"{len(names)}\n{HEADER}\n" + "\n".join(rows) + "\n")
    write_text(root / "Eval" / "list_eval_partition.txt",
               "".join(f"{n} {p}\n" for n, p in zip(names, [0, 0, 0, 0, 1, 2])))
    write_text(root / "MAFL" / "training.txt", "000001.jpg\n000002.jpg\n")
    write_text(root / "MAFL" / "testing.txt", "000003.jpg\n000005.jpg\n")
    for n in names:
        write_image(root / "Img" / "img_align_celeba" / n, 32, 40)
        write_image(root / "Img" / "img_celeba" / n, 64, 64)
    wild = [f"{n} " + " ".join(str(int(v)) for v in (celeba_points(i) + 20).ravel())
            for i, n in enumerate(names)]
    write_text(root / "Anno" / "list_landmarks_celeba.txt",
               f"{len(names)}\n{HEADER}\n" + "\n".join(wild) + "\n")
    write_text(root / "Anno" / "list_bbox_celeba.txt",
               f"{len(names)}\nimage_id x_1 y_1 width height\n"
               + "".join(f"{n} 20 24 20 30\n" for n in names))
    return root


def mtfl_line(path: str, xs, ys, attributes=" 1 2 2 3") -> str:
    return f" {path} " + " ".join(f"{v:.2f}" for v in [*xs, *ys]) + attributes + "\n"


@pytest.fixture
def aflw_m_root(tmp_path) -> Path:
    root = tmp_path / "aflw_m"
    xs, ys = [11, 21, 16, 12, 20], [13, 13, 19, 25, 25]
    write_text(root / "MTFL" / "testing.txt",
               mtfl_line("AFLW\\0001-image20056.jpg", xs, ys) + mtfl_line("AFLW\\0002-image3.jpg", xs, ys))
    for n in ("0001-image20056.jpg", "0002-image3.jpg"):
        write_image(root / "MTFL" / "AFLW" / n, 30, 30)
    header = "image_file,face_id,crop_file,set," + ",".join(
        f"{p}_{c}" for p in range(1, 6) for c in "xy") + ",extra"
    points = ",".join(str(v) for v in range(1, 11))  # x1=1,y1=2,...: 1-based
    write_text(root / "aflw_cropped" / "facedata_cropped.csv",
               f"{header}\nimage20056.jpg,0,crops/a.jpg,2,{points},0\n"
               f"image1.jpg,1,crops/b.jpg,1,{points},0\nimage2.jpg,2,crops/c.jpg,1,{points},0\n")
    for n in ("a", "b", "c"):
        write_image(root / "aflw_cropped" / "crops" / f"{n}.jpg", 20, 20)
    return root


@pytest.fixture
def aflw_r_root(tmp_path) -> Path:
    root = tmp_path / "aflw_r"
    for split, n in (("train", 3), ("test", 2)):
        names = [f"{split}_{i}.jpg" for i in range(n)]
        write_text(root / f"aflw_{split}_images.txt", "\n".join(names) + "\n")
        gt = np.zeros((n, 5, 2))
        gt[:, :, 0] = np.arange(5) + 30  # y
        gt[:, :, 1] = np.arange(5) + 10  # x
        gt[0, 4] = np.nan  # an unannotated point
        scipy.io.savemat(root / f"aflw_{split}_keypoints.mat", {"gt": gt, "hw": np.full((n, 2), 50.0)})
        for name in names:
            write_image(root / "output" / name, 50, 50)
    return root


def pts_text(points: np.ndarray) -> str:
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in points)
    return f"version: 1\nn_points:  {len(points)}\n{{\n{body}}}\n"


def w300_points(k: int = 0) -> np.ndarray:
    """68 points, 1-based, inside a 60x60 image."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([30 + 15 * np.cos(t), 30 + 15 * np.sin(t)], 1) + k


def write_boxes(path: Path, boxes: dict[str, list[float]]) -> None:
    """The official format: a 1xN cell array of structs imgName/bb_detector/bb_ground_truth."""
    cells = np.empty((1, len(boxes)), dtype=object)
    for i, (name, box) in enumerate(boxes.items()):
        cells[0, i] = {"imgName": name, "bb_detector": np.array(box, float) + 1,
                       "bb_ground_truth": np.array(box, float)}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"bounding_boxes": cells})


W300_FIXTURE = {"lfpw/trainset": ["image_0001.png", "image_0002.png"],
                "helen/trainset": ["100032540_1.jpg"], "afw": ["1051618982_1.jpg"],
                "lfpw/testset": ["image_0001.png"], "helen/testset": ["2908549_1.jpg"],
                "ibug": ["image_003_1.jpg", "image_004_1.jpg"]}


@pytest.fixture
def w300_root(tmp_path) -> Path:
    root = tmp_path / "300w"
    for k, (subset, names) in enumerate(W300_FIXTURE.items()):
        boxes = {}
        for name in names:
            write_image(root / subset / name, 60, 60)
            write_text((root / subset / name).with_suffix(".pts"), pts_text(w300_points(k)))
            boxes[name] = [11, 21, 30, 40]  # xmin ymin xmax ymax, 1-based
        boxes["image_999_mirror.jpg"] = [1, 1, 10, 10]  # boxes of absent images are ignored
        write_boxes(root / "Bounding Boxes" / f"bounding_boxes_{subset.replace('/', '_')}.mat", boxes)
    return root


# --------------------------------------------------------------------------- parsers

def test_read_celeba_files(celeba):
    lms = faces.read_celeba_landmarks(celeba / "Anno" / "list_landmarks_align_celeba.txt")
    assert list(lms) == [f"{i:06d}.jpg" for i in range(1, 7)]
    np.testing.assert_array_equal(lms["000002.jpg"], celeba_points(1))
    part = faces.read_celeba_partition(celeba / "Eval" / "list_eval_partition.txt")
    assert part["000005.jpg"] == 1 and part["000006.jpg"] == 2
    boxes = faces.read_celeba_bboxes(celeba / "Anno" / "list_bbox_celeba.txt")
    np.testing.assert_array_equal(boxes["000001.jpg"], [20, 24, 20, 30])


def test_read_pts_is_zero_based(tmp_path):
    pts = write_text(tmp_path / "a.pts", pts_text(w300_points()))
    np.testing.assert_allclose(faces.read_pts(pts), w300_points() - 1, atol=1e-3)


def test_read_mtfl_orders_x_then_y_and_shifts_to_zero_based(aflw_m_root):
    rows = faces.read_mtfl(aflw_m_root / "MTFL" / "testing.txt")
    assert rows[0][0] == "AFLW/0001-image20056.jpg"
    np.testing.assert_allclose(rows[0][1], [[10, 12], [20, 12], [15, 18], [11, 24], [19, 24]])


# --------------------------------------------------------------------------- datasets

def test_mafl_items(celeba):
    train, test = faces.mafl(celeba, "train"), faces.mafl(celeba, "test")
    assert len(train) == 2 and len(test) == 2 and train.eye_idx == (0, 1)
    item = test[1]
    assert item["name"] == "000005.jpg"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 40, 32)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert abs(item["image"][0].mean().item() - 200 / 255) < 0.02  # the fixture's colour
    assert item["landmarks"].dtype == torch.float32
    torch.testing.assert_close(item["landmarks"], torch.tensor(celeba_points(4), dtype=torch.float32))
    assert item["visible"].dtype == torch.bool and item["visible"].all()


def test_celeba_unlabelled_is_celeba_minus_mafl_test(celeba):
    names = lambda ds: [s.name for s in ds.samples]  # noqa: E731
    assert names(faces.celeba_unlabelled(celeba)) == ["000001.jpg", "000002.jpg", "000004.jpg"]
    assert names(faces.celeba_unlabelled(celeba, partitions=(0, 1, 2))) == \
        ["000001.jpg", "000002.jpg", "000004.jpg", "000006.jpg"]
    assert names(faces.celeba_unlabelled(celeba, exclude_mafl="all")) == ["000004.jpg"]
    assert len(faces.celeba_unlabelled(celeba, partitions=(0, 1, 2), exclude_mafl=None)) == 6
    assert faces.celeba_unlabelled(celeba)[0]["image"].shape == (3, 40, 32)


def test_mafl_unaligned_crops_the_zoomed_box(celeba):
    ds = faces.mafl_unaligned(celeba, "test", zoom=(1.0, 1.0))
    item = ds[0]  # box x 20, y 24, 20 x 30: the crop is exactly the box
    assert item["image"].shape == (3, 30, 20)
    torch.testing.assert_close(item["landmarks"],
                               torch.tensor(celeba_points(2) + 20 - [20, 24], dtype=torch.float32))
    zoomed = faces.mafl_unaligned(celeba, "test", seed=1)
    assert zoomed.samples[0].box[2] >= 20 and zoomed.samples[0].box[2] <= 40  # zoom 1-2x
    assert [s.box for s in zoomed.samples] == [s.box for s in faces.mafl_unaligned(celeba, "test", seed=1).samples]


def test_aflw_m(aflw_m_root):
    test = faces.aflw_m(aflw_m_root, "test")
    assert len(test) == 2 and test[0]["name"] == "AFLW/0001-image20056.jpg"
    torch.testing.assert_close(test[0]["landmarks"][0], torch.tensor([10.0, 12.0]))
    train = faces.aflw_m(aflw_m_root, "train")  # only the rows with set 1
    assert [s.name for s in train.samples] == ["crops/b.jpg", "crops/c.jpg"]
    torch.testing.assert_close(train[0]["landmarks"],
                               torch.arange(10, dtype=torch.float32).reshape(5, 2))
    assert train[0]["image"].shape == (3, 20, 20)


def test_aflw_r_swaps_y_x(aflw_r_root):
    train, test = faces.aflw_r(aflw_r_root, "train"), faces.aflw_r(aflw_r_root, "test")
    assert len(train) == 3 and len(test) == 2
    item = train[1]
    assert item["name"] == "train_1.jpg" and item["image"].shape == (3, 50, 50)
    torch.testing.assert_close(item["landmarks"][:, 0], torch.arange(5.0) + 10)  # x
    torch.testing.assert_close(item["landmarks"][:, 1], torch.arange(5.0) + 30)  # y
    for first in (train[0], faces.aflw_r(aflw_r_root, "train", transform=faces.thesis_crop)[0]):
        # its 5th point is NaN in the file: not visible, and 0 even after a transform
        assert first["visible"].tolist() == [True, True, True, True, False]
        assert torch.isfinite(first["landmarks"]).all() and first["landmarks"][4].eq(0).all()


def test_w300_split_uses_the_right_folders(w300_root):
    prefixes = lambda ds: sorted({s.name.rsplit("/", 1)[0] for s in ds.samples})  # noqa: E731
    assert prefixes(faces.w300(w300_root, "train")) == ["afw", "helen/trainset", "lfpw/trainset"]
    assert prefixes(faces.w300(w300_root, "test")) == ["helen/testset", "ibug", "lfpw/testset"]
    assert prefixes(faces.w300(w300_root, "common")) == ["helen/testset", "lfpw/testset"]
    assert prefixes(faces.w300(w300_root, "challenging")) == ["ibug"]
    assert len(faces.w300(w300_root, "train")) == 4 and len(faces.w300(w300_root, "test")) == 4
    counts = faces.w300_counts(w300_root)
    assert (counts["train"], counts["common"], counts["challenging"], counts["test"]) == (4, 2, 2, 4)


def test_w300_crops_around_the_ground_truth_box(w300_root):
    image = np.zeros((60, 60, 3), np.uint8)
    image[20, 10] = 255  # 0-based (x 10, y 20) = the box's 1-based top-left corner (11, 21)
    Image.fromarray(image).save(w300_root / "lfpw/trainset/image_0001.png")
    points = w300_points()
    points[0] = [11, 21]
    write_text(w300_root / "lfpw/trainset/image_0001.pts", pts_text(points))
    tight = faces.w300(w300_root, "train", context=1.0)  # box width 20 -> a 20 x 20 crop
    item = tight[[s.name for s in tight.samples].index("lfpw/trainset/image_0001.png")]
    assert item["image"].shape == (3, 20, 20) and item["landmarks"].shape == (68, 2)
    torch.testing.assert_close(item["landmarks"][0], torch.tensor([0.0, 0.0]))
    assert item["image"][:, 0, 0].eq(1).all() and item["image"][:, 1:, 1:].eq(0).all()
    assert tight.eye_idx == (36, 45)
    wide = faces.w300(w300_root, "train", context=2.0)  # 40 x 40 around centre (19.5, 29.5)
    item = wide[[s.name for s in wide.samples].index("lfpw/trainset/image_0001.png")]
    assert item["image"].shape == (3, 40, 40)
    torch.testing.assert_close(item["landmarks"][0], torch.tensor([10.0, 10.0]))
    assert item["image"][:, 10, 10].eq(1).all()
    whole = faces.w300(w300_root, "train", context=None)
    assert whole[0]["image"].shape == (3, 60, 60)


def test_w300_counts_report_3148_689_only_for_the_full_dataset(tmp_path, w300_root):
    counts = faces.w300_counts(w300_root)
    assert counts["train"] != 3148 and counts["test"] != 689
    full = tmp_path / "full"
    for subset, n in faces.W300_EXPECTED.items():
        (full / subset).mkdir(parents=True)
        for i in range(n):
            (full / subset / f"image_{i:04d}.pts").touch()
            (full / subset / f"image_{i:04d}.jpg").touch()
    (full / "afw" / "orphan.pts").touch()  # a .pts without its image is not counted
    counts = faces.w300_counts(full)
    assert (counts["train"], counts["common"], counts["challenging"], counts["test"]) == \
        (3148, 554, 135, 689)
    assert all(counts[s] == n for s, n in faces.W300_EXPECTED.items())


def test_landmark_benchmark_uses_default_dirs(tmp_path, celeba, w300_root):
    assert len(faces.landmark_benchmark("mafl", tmp_path, "test")) == 2
    assert len(faces.landmark_benchmark("300w", tmp_path, "test")) == 4
    with pytest.raises(ValueError, match="unknown benchmark"):
        faces.landmark_benchmark("lfw", tmp_path)


# --------------------------------------------------------------------------- protocol

def test_thesis_crop_hand_case():
    image = torch.rand(3, 200, 100)  # H 200, W 100
    landmarks = torch.tensor([[50.0, 100.0], [25.0, 40.0]])
    out, lm = faces.thesis_crop(image, landmarks)
    assert out.shape == (3, 96, 96)
    # x' = x * 136/100 - 20, y' = y * 136/200 - 20
    torch.testing.assert_close(lm, torch.tensor([[48.0, 48.0], [14.0, 7.2]]))
    flat, _ = faces.thesis_crop(torch.full((3, 200, 100), 0.25), landmarks)
    torch.testing.assert_close(flat, torch.full((3, 96, 96), 0.25))


def test_thesis_crop_as_transform_and_batching(celeba):
    ds = faces.mafl(celeba, "train", transform=faces.thesis_crop)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 96, 96) and batch["landmarks"].shape == (2, 5, 2)
    expected = torch.tensor(celeba_points(0), dtype=torch.float32) * torch.tensor([136 / 32, 136 / 40]) - 20
    torch.testing.assert_close(batch["landmarks"][0], expected)
    assert batch["name"] == ["000001.jpg", "000002.jpg"]


def test_crop_box_pads_with_zeros():
    image = torch.ones(3, 4, 4)
    out, lm = faces.crop_box(image, torch.tensor([[1.0, 1.0]]), -2, 1, 4, 4)
    assert out.shape == (3, 4, 4)
    assert out[:, :3, 2:].eq(1).all() and out[:, :, :2].eq(0).all() and out[:, 3:].eq(0).all()
    torch.testing.assert_close(lm, torch.tensor([[3.0, 0.0]]))


# --------------------------------------------------------------------------- errors

def test_missing_dataset_names_file_and_script(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        faces.mafl(tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert "Anno/list_landmarks_align_celeba.txt" in msg
    assert "python data_scripts/prepare_celeba_mafl.py --help" in msg
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(DatasetNotFound, match=r"MTFL/testing.txt.*prepare_aflw.py"):
        faces.aflw_m(tmp_path, "test")
    with pytest.raises(DatasetNotFound, match=r"aflw_test_images.txt.*prepare_aflw.py"):
        faces.aflw_r(tmp_path, "test")
    with pytest.raises(DatasetNotFound, match=r"lfpw/trainset.*prepare_300w.py"):
        faces.w300(tmp_path, "train")


@pytest.mark.parametrize("text, match", [
    ("five\n" + HEADER + "\n", "line 1: expected the number of images"),
    ("1\nlefteye_x lefteye_y\n", "line 2: header should be"),
    ("1\n" + HEADER + "\n000001.jpg 1 2 3\n", "line 3: expected a name and 10 numbers"),
    ("2\n" + HEADER + "\n000001.jpg 1 2 3 4 5 6 7 8 9 x\n", "line 3: expected numbers"),
    ("3\n" + HEADER + "\n000001.jpg 1 2 3 4 5 6 7 8 9 10\n", "announces 3 images but 1 follow"),
])
def test_malformed_celeba_landmarks(tmp_path, text, match):
    path = write_text(tmp_path / "Anno" / "list_landmarks_align_celeba.txt", text)
    with pytest.raises(MalformedDataset, match=match) as err:
        faces.read_celeba_landmarks(path)
    assert str(path) in str(err.value) and "prepare_celeba_mafl.py" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("text, match", [
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n", None),
    ("n_points: 2\n{\n1 2\n3 4\n}\n", "line 1: expected 'version: 1'"),
    ("version: 1\nn_points: two\n{\n1 2\n3 4\n}\n", "line 2: expected 'n_points: N'"),
    ("version: 1\nn_points: 2\n1 2\n3 4\n}\n", "line 3: expected '{'"),
    ("version: 1\nn_points: 2\n{\n1 2\n3\n}\n", "line 5: expected 'x y' .point 2 of 2"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 y\n}\n", "line 5: expected numbers"),
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "line 6: expected 'x y' .point 3 of 3"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", "line 6: expected '}' after 2 points, got the end"),
])
def test_malformed_pts(tmp_path, text, match):
    path = write_text(tmp_path / "a.pts", text)
    if match is None:
        np.testing.assert_array_equal(faces.read_pts(path), [[0, 1], [2, 3]])
        return
    with pytest.raises(MalformedDataset, match=match) as err:
        faces.read_pts(path)
    assert str(path) in str(err.value) and "prepare_300w.py" in str(err.value)


def test_malformed_lists_and_tables(tmp_path, celeba, aflw_m_root, aflw_r_root, w300_root):
    write_text(celeba / "Eval" / "list_eval_partition.txt", "000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(MalformedDataset, match=r"list_eval_partition.txt, line 2"):
        faces.celeba_unlabelled(celeba)
    write_text(celeba / "MAFL" / "testing.txt", "000003.jpg\n999999.jpg\n")
    with pytest.raises(MalformedDataset, match=r"testing.txt: 1 names .first '999999.jpg'. are not in"):
        faces.mafl(celeba, "test")
    write_text(aflw_m_root / "MTFL" / "testing.txt", mtfl_line("a.jpg", [1] * 5, [2] * 5)
               + " b.jpg 1 2 3\n")
    with pytest.raises(MalformedDataset, match=r"testing.txt, line 2: expected 'path x1..x5 y1..y5'"):
        faces.aflw_m(aflw_m_root, "test")
    write_text(aflw_m_root / "aflw_cropped" / "facedata_cropped.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(MalformedDataset, match=r"facedata_cropped.csv, line 1: header"):
        faces.aflw_m(aflw_m_root, "train")
    scipy.io.savemat(aflw_r_root / "aflw_test_keypoints.mat", {"gt": np.zeros((5, 5, 2))})
    with pytest.raises(MalformedDataset, match=r"aflw_test_keypoints.mat: 'gt' has shape"):
        faces.aflw_r(aflw_r_root, "test")
    scipy.io.savemat(aflw_r_root / "aflw_test_keypoints.mat", {"keypoints": np.zeros((2, 5, 2))})
    with pytest.raises(MalformedDataset, match=r"expected a variable 'gt'"):
        faces.aflw_r(aflw_r_root, "test")
    box_file = w300_root / "Bounding Boxes" / "bounding_boxes_ibug.mat"
    write_boxes(box_file, {"image_003_1.jpg": [1, 1, 10, 10]})
    with pytest.raises(MalformedDataset, match=r"bounding_boxes_ibug.mat: no box for image_004_1.jpg"):
        faces.w300(w300_root, "test")
    scipy.io.savemat(box_file, {"boxes": np.zeros(3)})
    with pytest.raises(MalformedDataset, match=r"bounding_boxes_ibug.mat: expected a cell array"):
        faces.w300(w300_root, "test")


def test_missing_or_corrupt_image(celeba):
    (celeba / "Img" / "img_align_celeba" / "000002.jpg").unlink()
    (celeba / "Img" / "img_align_celeba" / "000001.jpg").write_bytes(b"not a jpeg")
    ds = faces.mafl(celeba, "train")
    with pytest.raises(MalformedDataset, match=r"000001.jpg: cannot decode image"):
        ds[0]
    with pytest.raises(DatasetNotFound, match=r"expected image .*000002.jpg.*prepare_celeba_mafl.py"):
        ds[1]


def test_bad_arguments(celeba):
    with pytest.raises(ValueError, match="split must be one of train, test"):
        faces.mafl(celeba, "val")
    with pytest.raises(ValueError, match="exclude_mafl"):
        faces.celeba_unlabelled(celeba, exclude_mafl="train")


# --------------------------------------------------------------------------- data_scripts

SCRIPTS = ["prepare_celeba_mafl.py", "prepare_aflw.py", "prepare_300w.py", "prepare_gan_images.py"]


def test_script_help(tmp_path):
    """Each script's --help runs as a plain command (own interpreter, no PYTHONPATH, any cwd)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = {name: subprocess.Popen([sys.executable, str(REPO / "data_scripts" / name), "--help"],
                                    cwd=tmp_path, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in SCRIPTS}  # in parallel: each pays for importing torch
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err}"
        assert "Where to get the data" in out and "--out" in out, name
    # the scripts find this checkout's ssl_lab by themselves (imported after --help)
    proc = subprocess.run([sys.executable, str(REPO / "data_scripts" / "prepare_300w.py"),
                           "--out", tmp_path, "--verify-only"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: expected"), proc.stderr
    assert "prepare_300w.py --help" in proc.stderr


def script(name: str, *args) -> tuple[int, str, str]:
    """Run a data script in this process (as `python data_scripts/<name> args`): status, out, err."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "data_scripts"))
        mp.setattr(sys, "argv", [name, *map(str, args)])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(REPO / "data_scripts" / name), run_name="__main__")
                code = 0
            except SystemExit as exit:
                code = exit.code or 0
    return code, out.getvalue(), err.getvalue()


def test_prepare_celeba_mafl_copies_and_verifies(tmp_path, celeba):
    out = tmp_path / "data"
    code, stdout, stderr = script("prepare_celeba_mafl.py", "--celeba", celeba,
                                  "--mafl", celeba / "MAFL", "--out", out)
    assert code == 0, stderr
    assert "MAFL train: 2 (the full dataset has 19000: a partial copy)" in stdout
    assert len(faces.mafl(out / "celeba", "test")) == 2
    assert (out / "celeba" / "Img" / "img_celeba" / "000001.jpg").exists()
    assert not list(out.rglob("*.tmp"))  # nothing half-written left behind
    code, _, stderr = script("prepare_celeba_mafl.py", "--celeba", celeba, "--out", out)
    assert code == 2 and "exists; pass --force" in stderr
    assert script("prepare_celeba_mafl.py", "--celeba", celeba, "--out", out, "--force",
                  "--link")[0] == 0
    assert (out / "celeba" / "Img" / "img_align_celeba").is_symlink()


def test_prepare_scripts_report_missing_files(tmp_path):
    code, _, stderr = script("prepare_celeba_mafl.py", "--out", tmp_path, "--verify-only")
    assert code == 2
    assert "list_landmarks_align_celeba.txt" in stderr and "prepare_celeba_mafl.py" in stderr


def test_prepare_aflw_and_300w(tmp_path, aflw_m_root, aflw_r_root, w300_root):
    out = tmp_path / "data"
    archive = shutil.make_archive(str(tmp_path / "MTFL"), "zip", aflw_m_root / "MTFL")
    code, stdout, stderr = script("prepare_aflw.py", "--mtfl", archive, "--aflw-cropped",
                                  aflw_m_root / "aflw_cropped", "--aflw-r", aflw_r_root, "--out", out)
    assert code == 0, stderr
    assert "aflw_m test: 2 (the full dataset has 2995" in stdout
    assert "aflw_r train: 3 (the full dataset has 10122" in stdout
    assert len(faces.aflw_m(out / "aflw_m", "test")) == 2
    code, stdout, stderr = script("prepare_300w.py", "--src", w300_root, "--out", out)
    assert code == 0, stderr
    assert "300w train: 4 (the full dataset has 3148" in stdout
    assert faces.w300_counts(out / "300w")["test"] == 4
