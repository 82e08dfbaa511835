"""Ground truth of SynthFaces is true: landmarks sit where the parts are drawn."""
import numpy as np
import pytest
import torch

from ssl_lab.data import splits
from ssl_lab.data.synthfaces import (BINARY_ATTRIBUTES, PART, SynthConfig, hash_uniform, landmark_part_agreement,
                                     identity_params, render_faces)

CLEAN_WIDE = SynthConfig(yaw=60, pitch=25, roll=30, blur=(0, 0), noise=(0, 0), occluder_p=0.0)
MAGENTA = (1.0, 0.0, 1.0)


def _render(n, size=128, cfg=CLEAN_WIDE, seed=3, **kw):
    idx = np.arange(n)
    return render_faces(idx, idx, seed=seed, size=size, cfg=cfg, **kw)


def _pixel(t, kp):
    """Values of per-image maps t (B, H, W) at rounded landmark positions kp (B, K, 2)."""
    x, y = kp[..., 0].round().long(), kp[..., 1].round().long()
    return t[torch.arange(len(t))[:, None], y.clamp(0, t.shape[1] - 1), x.clamp(0, t.shape[2] - 1)]


def test_hash_uniform_is_a_pure_function_of_its_keys():
    a = hash_uniform(7, [1, 2, 3], stream=1, n=5)
    assert a.shape == (3, 5) and (a >= 0).all() and (a < 1).all()
    np.testing.assert_array_equal(a[1], hash_uniform(7, [2], stream=1, n=5)[0])
    assert not np.allclose(a, hash_uniform(7, [1, 2, 3], stream=2, n=5))
    assert not np.allclose(a, hash_uniform(8, [1, 2, 3], stream=1, n=5))
    assert abs(hash_uniform(0, np.arange(20000), 1, 1).mean() - 0.5) < 0.01


def test_rendering_does_not_depend_on_batch_composition():
    a = render_faces(np.arange(8), np.arange(8) // 2, seed=1, size=48)
    b = render_faces(np.arange(3, 6), np.arange(3, 6) // 2, seed=1, size=48)
    torch.testing.assert_close(a["kp68"][3:6], b["kp68"], atol=1e-4, rtol=0)
    assert (a["image"][3:6] - b["image"]).abs().max() < 1e-4                  # noise included
    c = render_faces(np.arange(8), np.arange(8) // 2, seed=1, size=48)
    torch.testing.assert_close(a["image"], c["image"], atol=0, rtol=0)


def test_same_identity_id_gives_same_identity_parameters():
    p = identity_params(np.array([5, 9, 5]))
    for k, v in p.items():
        np.testing.assert_array_equal(v[0], v[2], err_msg=k)
    assert any(not np.array_equal(v[0], v[1]) for v in p.values())
    out = render_faces(np.array([0, 1, 2]), np.array([4, 4, 4]), seed=0, size=32)
    id_attrs = [BINARY_ATTRIBUTES.index(a) for a in ("male", "young", "bangs", "beard", "eyeglasses")]
    assert (out["binary"][:, id_attrs] == out["binary"][0, id_attrs]).all()


def test_eye_centres_fall_inside_the_eye_pixels_over_random_poses():
    out = _render(300, colours={"iris": MAGENTA})
    vis = out["vis5"][:, :2]
    assert vis.float().mean() > 0.8
    labels = _pixel(out["parts"], out["kp5"][:, :2])
    want = torch.tensor([PART["left_eye"], PART["right_eye"]])
    assert (labels[vis] == want.expand_as(labels)[vis]).all()
    r, g, b = (_pixel(out["image"][:, c], out["kp5"][:, :2])[vis] for c in range(3))
    magenta = (r > 0.25) & ((r - b).abs() < 0.05 * r + 0.02) & (g < 0.1 * r + 0.02)  # shaded magenta
    assert magenta.float().mean() > 0.98, magenta.float().mean()


def test_mouth_corners_are_at_the_ends_of_the_mouth():
    out = _render(200, overrides={"mouth_open": 0.0})
    checked = 0
    for i in range(200):
        corners = out["kp68"][i, [48, 54]]
        if not out["vis68"][i, [48, 54]].all():
            continue
        yy, xx = torch.nonzero(out["parts"][i] == PART["mouth"], as_tuple=True)
        pix = torch.stack([xx, yy], -1).float()
        ny, nx = torch.nonzero(out["parts"][i] == PART["nose"], as_tuple=True)
        nose = torch.stack([nx, ny], -1).float()
        if len(nose) and torch.cdist(corners, nose).min() < 4:
            continue                                    # the nose hides part of the mouth
        axis = corners[1] - corners[0]
        length = axis.norm()
        if length < 4 or len(pix) < 10:
            continue
        axis = axis / length
        proj = (pix - corners[0]) @ axis
        assert abs(proj.min()) < 1.5 and abs(proj.max() - length) < 1.5, i
        for c in corners:
            assert (pix - c).norm(dim=-1).min() < 2.0      # the mouth tapers to a point
        checked += 1
    assert checked > 60


def test_five_points_are_the_mafl_subset_of_the_68():
    out = _render(16, size=64)
    torch.testing.assert_close(out["kp5"][:, 2:], out["kp68"][:, [30, 48, 54]])
    front = render_faces(np.arange(4), np.arange(4), size=64,
                         cfg=SynthConfig(yaw=0, pitch=0, roll=0, blur=(0, 0), noise=(0, 0)))
    for eye, sl in ((0, slice(36, 42)), (1, slice(42, 48))):
        torch.testing.assert_close(front["kp5"][:, eye], front["kp68"][:, sl].mean(1), atol=0.3, rtol=0)
    assert (front["kp5"][:, 0, 0] < front["kp5"][:, 1, 0]).all()       # image-left eye first
    assert (front["kp5"][:, 3, 0] < front["kp5"][:, 4, 0]).all()


def test_yaw_turns_the_face_and_hides_the_far_side():
    n = 8
    cfg = SynthConfig(yaw=0, pitch=0, roll=0, blur=(0, 0), noise=(0, 0))
    left = render_faces(np.arange(n), np.arange(n), size=64, cfg=cfg, overrides={"yaw": -60.0})
    right = render_faces(np.arange(n), np.arange(n), size=64, cfg=cfg, overrides={"yaw": 60.0})
    # +yaw turns the face towards the image right: its right-hand jaw (12..16) goes behind
    for out, hidden, shown in ((right, slice(13, 17), slice(0, 4)), (left, slice(0, 4), slice(13, 17))):
        assert not out["vis68"][:, hidden].any()
        assert out["vis68"][:, shown].all()
    eye_mid = lambda o: o["kp5"][:, :2, 0].mean(1)
    assert (right["kp5"][:, 2, 0] > eye_mid(right)).all()              # +yaw: nose to the right
    assert (left["kp5"][:, 2, 0] < eye_mid(left)).all()
    assert (right["pose"][:, 0] == 60).all()


def test_part_map_covers_the_named_parts_and_sizes():
    out = render_faces(np.arange(64), np.arange(64), size=64, cfg=SynthConfig(occluder_p=0.5))
    present = set(out["parts"].unique().tolist())
    assert present >= set(PART.values())
    for size in (32, 256):
        o = render_faces(np.arange(2), np.arange(2), size=size)
        assert o["image"].shape == (2, 3, size, size) and o["parts"].shape == (2, size, size)
        assert 0 <= o["image"].min() and o["image"].max() <= 1
    with pytest.raises(ValueError, match="size"):
        render_faces(np.arange(1), np.arange(1), size=8)


def test_attributes_show_in_pixels():
    cfg = SynthConfig(yaw=0, pitch=0, roll=0, occluder_p=0)
    out = render_faces(np.arange(200), np.arange(200), size=64, cfg=cfg)
    b = {a: out["binary"][:, i].bool() for i, a in enumerate(BINARY_ATTRIBUTES)}
    has = lambda part: (out["parts"] == PART[part]).flatten(1).any(1)
    assert (has("glasses") == b["eyeglasses"]).all()
    assert (has("beard") == b["beard"]).all()
    assert not (b["beard"] & ~b["male"]).any()
    assert 0.3 < b["male"].float().mean() < 0.7


def test_occluders_hide_landmarks():
    out = _render(100, size=64, cfg=SynthConfig(occluder_p=1.0, yaw=0, pitch=0, roll=0))
    covered = _pixel(out["parts"], out["kp68"]) == PART["occluder"]
    assert covered.any() and not (out["vis68"] & covered).any()


def test_unknown_override_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown parameter 'yawn'"):
        render_faces(np.arange(1), np.arange(1), overrides={"yawn": 3})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    a = render_faces(np.arange(4), np.arange(4), size=64)
    b = render_faces(np.arange(4), np.arange(4), size=64, device="cuda")
    torch.testing.assert_close(a["kp68"], b["kp68"].cpu(), atol=1e-3, rtol=0)
    assert (a["image"] - b["image"].cpu()).abs().mean() < 1e-3


# ---------------------------------------------------------------- splits


def test_split_items_follow_the_dataset_interface_and_are_cached(home):
    test = splits.load("mafl/test", "smoke", n=20)
    item = test[0]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
    assert item["landmarks"].shape == (5, 2) and item["visible"].dtype == torch.bool
    assert item["name"] == "mafl/test/000000"
    assert len(list((home / "synthfaces").glob("*.pt"))) == 1
    again = splits.load("mafl/test", "smoke", n=20)
    assert torch.equal(again.data["image"], test.data["image"])
    assert splits.load("300w/test", "smoke", n=4)[0]["landmarks"].shape == (68, 2)


def test_splits_have_disjoint_identities_and_recorded_zoom(home):
    tr, te = splits.load("mafl/train", "smoke", n=30), splits.load("mafl/test", "smoke", n=30)
    assert not set(tr.data["identity"].tolist()) & set(te.data["identity"].tolist())
    un = splits.load("mafl_unaligned/test", "smoke", n=40)
    z = un.data["zoom"]
    assert z.min() >= 1.0 and z.max() <= 2.0 and z.std() > 0.1


def test_render_params_are_those_the_split_was_drawn_with_and_light_shows(home):
    from ssl_lab.data.synthfaces import PART, frontal_light
    te = splits.load("aflw_m/test", "smoke", n=60)          # box-cropped: pose as drawn
    p = splits.render_params("aflw_m/test", 60)
    assert np.allclose(p["yaw"], te.data["pose"][:, 0].numpy(), atol=1e-4)
    assert np.allclose(p["zoom"], te.data["zoom"].numpy(), atol=1e-6)
    # hand cases: lit from the camera -> 1; ambient 0.5, light 60 degrees aside -> 0.5 + 0.5 cos 60
    hand = frontal_light(dict(ambient=np.array([0.6, 0.5]), light_az=np.array([0.0, np.pi / 3]),
                              light_el=np.array([0.0, 0.0])))
    assert np.allclose(hand, [1.0, 0.75])
    # it is the light the pixels show: the same faces, dim light from aside against bright light
    # from the camera; the skin of every face is brighter where frontal_light is higher
    ids, idx = np.arange(6), np.arange(6)
    dim = dict(ambient=0.45, light_az=1.0, light_el=0.6)
    bright = dict(ambient=0.75, light_az=0.0, light_el=0.0)
    assert frontal_light({k: np.array([v]) for k, v in dim.items()})[0] < 0.7 < frontal_light(
        {k: np.array([v]) for k, v in bright.items()})[0]
    lum = []
    for light in (dim, bright):
        r = render_faces(idx, ids, seed=3, size=48, overrides={**light, "yaw": 0.0, "pitch": 0.0, "roll": 0.0})
        skin = r["parts"] == PART["skin"]
        lum.append((r["image"].mean(1) * skin).sum((1, 2)) / skin.sum((1, 2)))
    assert (lum[1] > lum[0] * 1.2).all()

def test_matching_pairs(home):
    te = splits.load("mafl/test", "smoke", n=40)
    ids = te.data["identity"]
    same, diff = splits.matching_pairs(te, 16, True), splits.matching_pairs(te, 16, False)
    assert (ids[same[:, 0]] == ids[same[:, 1]]).all() and (same[:, 0] != same[:, 1]).all()
    assert (ids[diff[:, 0]] != ids[diff[:, 1]]).all()
    assert len({tuple(p) for p in same.tolist()}) == 16
    with pytest.raises(ValueError, match="larger split"):
        splits.matching_pairs(splits.load("mafl/test", "smoke", n=3), 50, True)


def test_full_scale_refuses_synthfaces():
    with pytest.raises(ValueError, match="real datasets"):
        splits.split_size("mafl/test", "full")


def test_landmark_part_agreement_scores_a_hand_made_case():
    parts = torch.zeros(1, 8, 8, dtype=torch.long)
    parts[0, 2, 2], parts[0, 2, 5], parts[0, 4, 4] = PART["left_eye"], PART["skin"], PART["nose"]
    parts[0, 6, 1:7] = PART["mouth"]
    kp5 = torch.tensor([[[2.0, 2.0], [5.0, 2.0], [4.0, 4.0], [1.0, 6.0], [7.9, 2.0]]])
    out = dict(parts=parts, kp5=kp5, vis5=torch.ones(1, 5, dtype=torch.bool))
    res = landmark_part_agreement(out)
    # left eye on its part, right eye on skin, nose on nose, one mouth corner of two near the mouth
    assert res == {"left_eye": 1.0, "right_eye": 0.0, "nose_tip": 1.0, "mouth_corners": 0.5}
    out = _render(100, size=96)
    assert all(v > 0.97 for v in landmark_part_agreement(out).values())


def test_framing_follows_the_thesis_crops(home):
    # thesis / DVE: CelebA at 136 px (IOD ~0.22 of the width) for stage 1, evaluation on its
    # 96-px centre crop (IOD ~0.31); the MAFL role is the centre crop, the CelebA role the whole
    iod = lambda name: float(splits.inter_ocular_fraction(splits.load(name, "smoke", n=60)))
    celeba, mafl = iod("celeba"), iod("mafl/test")
    assert 0.19 < celeba < 0.25, celeba
    assert 0.26 < mafl < 0.33, mafl


def test_aligned_roles_put_the_eyes_on_the_template_and_keep_parts_under_landmarks():
    """CelebA's alignment: the eye centres land on the template (to rounding), the eye line
    is level, and every landmark still sits on its own part, as without alignment."""
    from ssl_lab.data.synthfaces import landmark_part_agreement, render_faces
    for name in ("celeba", "mafl/test"):
        spec = splits.SPECS[name]
        x, y = spec.cfg.align_eyes
        size = 64
        idx = np.arange(40)
        out = render_faces(idx, spec.id_offset + idx // spec.per_identity, seed=spec.seed, size=size, cfg=spec.cfg)
        to_px = lambda u: (u + 1) * size / 2 - 0.5                       # [-1, 1] -> pixel centres
        target = torch.tensor([[to_px(-x), to_px(y)], [to_px(x), to_px(y)]])
        err = (out["kp5"][:, :2] - target).norm(dim=-1)
        assert err.max() < 1e-3, err.max()                               # well within a pixel
        agree = landmark_part_agreement(out)
        plain = render_faces(idx, spec.id_offset + idx // spec.per_identity, seed=spec.seed, size=size,
                             cfg=splits.UNALIGNED_CROP)
        base = landmark_part_agreement(plain)
        for part, share in agree.items():
            assert share >= min(0.95, base[part] - 0.03), (name, part, share, base[part])


def test_alignment_makes_copying_positions_cheap_on_mafl_pairs():
    """With eye-aligned faces, predicting the query's eyes at the reference's eye positions
    costs nothing; unaligned, it costs a sizeable share of the inter-ocular distance."""
    from ssl_lab.data.synthfaces import render_faces
    from ssl_lab.metrics.landmarks import copy_baseline
    spec = splits.SPECS["mafl/test"]
    idx = np.arange(64)
    pairs = torch.stack([torch.arange(0, 64, 2), torch.arange(1, 64, 2)], 1)
    errs = {}
    for label, cfg in (("aligned", spec.cfg), ("unaligned", splits.UNALIGNED_CROP)):
        out = render_faces(idx, spec.id_offset + idx, seed=spec.seed, size=48, cfg=cfg)
        eyes_only = copy_baseline(out["kp5"][:, :2], pairs, eyes=(0, 1))["iod"]
        errs[label] = (eyes_only, copy_baseline(out["kp5"], pairs, visible=out["vis5"])["iod"])
    assert errs["aligned"][0] < 0.01 and errs["unaligned"][0] > 5, errs
    assert errs["aligned"][1] < errs["unaligned"][1], errs
