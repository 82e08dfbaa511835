"""Landmark regression on frozen features: the mean-shape yardstick by hand, the recipe end to end."""
import math

import numpy as np
import pytest
import torch

from ssl_lab.nets.regressor import LandmarkRegressor
from ssl_lab import results, zoo
from ssl_lab.regression import (FEATURES, SETS, UNSHIPPED, budget_fields, budget_key, few_draws, mean_norm,
                                mean_shape_error, unshipped_cells)


def test_mean_shape_error_by_hand():
    # two training faces whose mean shape is the eyes at (10, 10), (20, 10) and a nose at (15, 15)
    train = torch.tensor([[[9.0, 10], [19, 10], [15, 14]], [[11, 10], [21, 10], [15, 16]]])
    test = torch.tensor([[[10.0, 10], [20, 10], [15, 15]],            # the mean shape: 0 % IOD
                         [[10.0, 13], [20, 13], [15, 18]]])           # shifted by 3 px, IOD 10: 30 %
    assert mean_shape_error(train, test, eyes=(0, 1)) == pytest.approx(15.0)
    # an invisible training point is left out of its mean: (100, 100) must not count
    train3 = torch.cat([train, torch.tensor([[[100.0, 100], [100, 100], [100, 100]]])])
    vis = torch.tensor([[True] * 3, [True] * 3, [False] * 3])
    assert mean_shape_error(train3, test, train_visible=vis, eyes=(0, 1)) == pytest.approx(15.0)
    mean, each = mean_shape_error(train, test, eyes=(0, 1), per_image=True)
    assert mean == pytest.approx(15.0) and each.tolist() == pytest.approx([0.0, 30.0])


def test_mean_norm_by_hand_and_a_scale_the_filters_absorb_exactly():
    # two images of 2 x 1 x 2 cells: norms 5, 0 | 1, 2 -> mean 2
    maps = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]], [[[1.0, 0.0]], [[0.0, 2.0]]]])
    assert mean_norm(maps) == pytest.approx(2.0)
    many = torch.randn(600, 7, 5, 3).half()                   # more than one chunk of 256 images
    assert mean_norm(many) == pytest.approx(float(many.double().norm(dim=1).mean()), rel=1e-12)
    # maps scaled by c with filters divided by c give the same heat maps, so the same points:
    # what rescaling a row's maps changes for the regressor is its starting point, not the
    # information in the maps
    feat = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    reg = LandmarkRegressor(8, 2, num_intermediate=4, generator=torch.Generator().manual_seed(0)).double()
    pred, _ = reg(feat)
    with torch.no_grad():
        reg.filters.div_(7.5)
    assert torch.allclose(reg(feat * 7.5)[0], pred, atol=1e-10)
    assert not torch.allclose(reg(feat)[0], pred, atol=1e-3)


def test_budget_keys_read_back_as_written():
    """The regressor-budget record's row keys, as data_scripts/regressor_budget.py writes them
    (these four are keys of the committed records), and back."""
    yard = "aflw_m | mean shape"
    plain = "mafl | LEAD / 64, protocol (120 of 200 epochs)"
    scaled = "aflw_m | CL / 64, protocol (45 of 200 epochs), maps scaled to mean norm 0.1"
    few = ("aflw_m | LEAD / 64, few-annotation protocol (50 epochs), maps scaled to mean norm 0.1, "
           "100 faces, draw 2")
    assert budget_fields(yard) == dict(set="aflw_m", row="mean shape", variant=None, norm=None,
                                       annotations=None, draw=None)
    assert budget_fields(plain)["variant"] == "protocol (120 of 200 epochs)" and budget_fields(plain)["norm"] is None
    assert budget_fields(scaled)["norm"] == 0.1 and budget_fields(scaled)["row"] == "CL / 64"
    assert budget_fields(few) == dict(set="aflw_m", row="LEAD / 64", norm=0.1, annotations=100, draw=2,
                                      variant="few-annotation protocol (50 epochs), maps scaled to mean norm 0.1")
    assert budget_fields("aflw_m | mean shape, 5 faces, draw 0") == dict(
        set="aflw_m", row="mean shape", variant=None, norm=None, annotations=5, draw=0)
    from ssl_lab import results
    recorded = [k for r in results.load_all("lead/regressor-budget") for k in r["rows"]]
    assert {yard, plain, scaled, few} <= set(recorded)
    for key in recorded:
        f = budget_fields(key)
        assert budget_key(f["set"], f["row"], f["variant"], f["annotations"], f["draw"]) == key


def test_few_draws_gathers_the_draws_of_each_row_norm_and_budget():
    v = lambda x: {"test": x, "train": 0.0}
    recs = [{"rows": {"aflw_m | mean shape, 5 faces, draw 0": v(90.0), "aflw_m | mean shape, 5 faces, draw 1": v(91.0),
                      "aflw_m | DVE / 64, few-annotation protocol (50 epochs), 5 faces, draw 0": v(100.0),
                      "aflw_m | DVE / 64, few-annotation protocol (50 epochs), 5 faces, draw 1": v(102.0),
                      "aflw_m | DVE / 64, few-annotation protocol (50 epochs), maps scaled to mean norm 0.1, "
                      "5 faces, draw 0": v(1.0)}},
            {"rows": {"aflw_m | DVE / 64, few-annotation protocol (50 epochs), 1 faces, draw 0": v(120.0),
                      "aflw_m | DVE / 64, protocol (45 of 200 epochs)": v(70.0)}}]
    assert few_draws(recs) == {("mean shape", None, 5): {0: v(90.0), 1: v(91.0)},
                               ("DVE / 64", None, 5): {0: v(100.0), 1: v(102.0)},
                               ("DVE / 64", 0.1, 5): {0: v(1.0)}, ("DVE / 64", None, 1): {0: v(120.0)}}


def test_unshipped_cells_read_the_newest_record_of_each_cell_and_flag_a_stale_key(tmp_path):
    row, st = "random hypercolumn", "300w"
    now = zoo.key("lead/regressor", "small", 0, features=row, set=st)

    def record(value, key, date, seed=0, scale="small", **extra):
        rec = results.make_record(UNSHIPPED, scale, "thesis-3.2",
                                  {row: {"300W": value, "300W s.e.": 0.5, "300W median": value - 1, **extra}},
                                  tag=f"seed{seed}-{date}", seeds=[seed],
                                  parameters=dict(features=row, set=st, regressor_key=key))
        rec["date"] = date                                  # load_all orders by date
        results.save(rec, root=tmp_path)

    record(40.0, now, "2026-01-01")
    record(41.0, now, "2026-02-01")                         # the newest current one wins
    record(99.0, now, "2026-03-01", seed=1)                 # another seed: not this one's
    record(98.0, now, "2026-03-01", scale="smoke")          # another scale
    cells = unshipped_cells("small", 0, root=tmp_path)
    assert list(cells) == [(row, "300W")]
    assert (cells[(row, "300W")]["iod"], cells[(row, "300W")]["se"], cells[(row, "300W")]["median"]) == (41.0, 0.5, 40.0)
    assert cells[(row, "300W")]["stale"] is None
    assert cells[(row, "300W")]["train"] is None and cells[(row, "300W")]["shipped"] is False   # not recorded: None
    record(42.0, "0123456789", "2026-04-01")                # made under another config or splits
    cell = unshipped_cells("small", 0, root=tmp_path)[(row, "300W")]
    assert cell["iod"] == 42.0 and "0123456789" in cell["stale"] and now in cell["stale"]
    assert unshipped_cells("small", 0, root=tmp_path / "nothing") == {}
    record(43.0, now, "2026-05-01", **{"300W train": 30.0, "300W train s.e.": 0.25})
    cell = unshipped_cells("small", 0, root=tmp_path)[(row, "300W")]
    assert (cell["iod"], cell["train"], cell["train_se"]) == (43.0, 30.0, 0.25)


def test_every_feature_row_and_set_is_known():
    from ssl_lab import zoo
    from ssl_lab.regression import feature_network
    for row in FEATURES:
        name, overrides, project = feature_network(row)
        if name is not None:
            zoo.config(name, "small", **overrides)                      # a recipe with these keys
        assert project == FEATURES[row][1].get("project") and "project" not in overrides
    assert set(SETS) == {"MAFL", "AFLW_M", "AFLW_R", "300W"}


def test_hypercolumn_rows_stand_beside_the_thesis_s_3840_rows_of_the_same_stage_1_objective():
    from ssl_lab import reference
    from ssl_lab.regression import THESIS_3840
    assert THESIS_3840 == {"BYOL hypercolumn": "LEAD / 3840", "MoCo hypercolumn": "CL / 3840"}
    assert set(THESIS_3840) <= set(FEATURES)
    assert FEATURES["BYOL hypercolumn"][0] == "lead/stage1-byol" and FEATURES["MoCo hypercolumn"][0] == "lead/stage1-moco"
    assert set(THESIS_3840.values()) <= set(reference.as_frame("thesis-3.5").index)


def test_regressor_recipe_trains_then_evaluates_at_smoke(home, one_thread):
    from ssl_lab import zoo
    from ssl_lab.regression import mean_shape_row, regression_error
    out = regression_error("random hypercolumn", "mafl", "smoke")       # trains the regressor once
    assert out["pred"].shape == (64, 5, 2) and math.isfinite(out["iod"]) and out["iod"] > 0
    each = out["per_image"].double()                                    # its standard error, by hand
    each = each[~each.isnan()]
    assert out["se"] == pytest.approx(float(each.std() / len(each) ** 0.5)) and out["se"] > 0
    art = zoo.load("lead/regressor", "smoke", features="random hypercolumn", set="mafl")
    assert art["num_points"] == 5 and len(art["history"]) == 3
    assert all(math.isfinite(v) for v in art["history"])
    assert math.isfinite(mean_shape_row("mafl", "smoke"))
    # part="train": the split it was fit on (128 images at smoke); epochs=: another regressor config
    assert regression_error("random hypercolumn", "mafl", "smoke", part="train")["pred"].shape == (128, 5, 2)
    longer = regression_error("random hypercolumn", "mafl", "smoke", epochs=4)
    assert len(zoo.load("lead/regressor", "smoke", features="random hypercolumn", set="mafl", epochs=4)["history"]) == 4
    assert longer["iod"] != out["iod"]
    with pytest.raises(KeyError, match="unknown feature row"):
        regression_error("pixels", "mafl", "smoke")


def test_end_to_end_yardstick_trains_lead_s_architecture_from_scratch_at_smoke(home, one_thread):
    """The supervised yardstick: LEAD's dense network at random init, trained with the
    regressor by the recipe's schedule; every weight moves and its maps feed the regressor."""
    from ssl_lab import zoo
    from ssl_lab.data import splits
    from ssl_lab.nets.backbones import dense_maps
    from ssl_lab.nets.regressor import predict
    from ssl_lab.regression import fit_end_to_end
    from ssl_lab.ssl.lead import DenseNet
    net, reg, hist = fit_end_to_end("mafl", "smoke", seed=0, amp=False)
    torch.manual_seed(0)                                   # the same initialisation, untrained
    cfg = zoo.config("lead/stage2-lead", "smoke")
    init = DenseNet(zoo.config("lead/stage1-byol", "smoke")["backbone"], 64, cfg["width"], stages=cfg["stages"])
    moved = [not torch.equal(a, b) for a, b in zip(net.parameters(), init.parameters())]
    assert all(moved) and not net.training and not reg.training
    assert len(hist["loss"]) == zoo.config("lead/regressor", "smoke")["epochs"] and reg.in_channels == 64
    test = splits.load("mafl/test", "smoke")
    pred = predict(reg, dense_maps(net, test.data["image"]), tuple(test.data["image"].shape[-2:]))
    assert pred.shape == (len(test.landmarks), 5, 2) and torch.isfinite(pred).all()
    assert len(fit_end_to_end("mafl", "smoke", epochs=1, amp=True)[2]["loss"]) == 1      # bf16, channels_last


def test_annotated_subsets_are_nested_per_draw_and_differ_across_draws():
    from ssl_lab.regression import annotated_subset
    five, one = annotated_subset(40, 5, draw=2), annotated_subset(40, 1, draw=2)
    assert len(set(five.tolist())) == 5 and five[0] == one[0]              # 1 of a draw is in its 5
    assert not torch.equal(annotated_subset(40, 5, draw=3), five)
    assert annotated_subset(40, 40, draw=0).sort().values.tolist() == list(range(40))
    with pytest.raises(ValueError, match="cannot annotate"):
        annotated_subset(40, 41, draw=0)


def test_few_annotation_regressor_trains_on_its_subset_only(home, one_thread):
    """DVE's limited-annotation protocol at smoke: the manifest names the annotated images, the
    subset is tiled to the split's size each epoch, and maps computed once serve every regressor."""
    from ssl_lab import scales, zoo
    from ssl_lab.regression import annotated_subset, eval_maps, few_annotation_errors, regression_error
    maps = eval_maps("random hypercolumn", "aflw_m", "smoke")
    errs = {n: regression_error("random hypercolumn", "aflw_m", "smoke", recipe="lead/regressor-few", maps=maps,
                                annotations=n, draw=0)["iod"] for n in (1, 5)}
    assert all(math.isfinite(v) and v > 0 for v in errs.values()) and errs[1] != errs[5]
    art = zoo.load("lead/regressor-few", "smoke", features="random hypercolumn", set="aflw_m", annotations=5, draw=0)
    n_train = scales.get("smoke").sizes["aflw_m/train"]
    assert art["annotated"] == annotated_subset(n_train, 5, 0).tolist() and len(art["history"]) == 2
    own = regression_error("random hypercolumn", "aflw_m", "smoke", recipe="lead/regressor-few", annotations=5, draw=0)
    assert own["iod"] == pytest.approx(errs[5], rel=1e-12)
    iods, pred = few_annotation_errors(maps, 5, [0, 1])              # Table 3.5's cell: one per draw
    assert iods[0] == pytest.approx(errs[5], rel=1e-12) and iods[1] != iods[0] and pred.shape == (64, 5, 2)

def test_regressor_flops_by_hand():
    from ssl_lab.regression import regressor_flops
    # C=3 channels, K=1 landmark, M=2 virtual points, a 2x2 map: the 1x1 filters are 2 * 3 * 4 = 24
    # multiply-adds, the linear map 2 outputs x 4 inputs = 8: (24 + 8) * 2 = 64 operations
    assert regressor_flops(3, 1, 2, num_intermediate=2) == 64
    # backward (features frozen): the filters' gradient 24 multiply-adds, the linear map's weight
    # and input gradients 8 each: 64 + (24 + 16) * 2 = 144
    assert regressor_flops(3, 1, 2, backward=True, num_intermediate=2) == 144
    # Table 3.7's 3840-d row: 5 landmarks x 50 filters on ContrastLandmarks' 48 x 48 map is
    # 250 * 3840 * 48 * 48 = 2.21e9 multiply-adds (plus 2,000 in the linear maps), and linear in C
    assert regressor_flops(3840, 5, 48) == 2 * (250 * 3840 * 48 * 48 + 5 * 2 * 100)
    assert regressor_flops(64, 5, (48, 48)) * 60 - regressor_flops(3840, 5, 48) == 2 * 59 * 1000


def test_error_by_bin_by_hand():
    from ssl_lab.regression import error_by_bin
    err = torch.tensor([1.0, 3.0, 10.0, float("nan"), 20.0, 7.0])
    zoom = torch.tensor([1.0, 1.2, 1.5, 1.6, 2.0, 1.9])
    lo, hi, last = error_by_bin(err, zoom, [1.0, 1.5, 2.0, 2.5])
    # [1, 1.5): 1 and 3 -> mean 2, sd sqrt(2), se sqrt(2) / sqrt(2) = 1
    assert (lo["n"], lo["mean"], lo["se"]) == (2, 2.0, pytest.approx(1.0))
    # [1.5, 2.0): 10 and 7 (the NaN face at 1.6 left out; 2.0 belongs to the last bin)
    assert (hi["n"], hi["mean"]) == (2, 8.5) and hi["se"] == pytest.approx(1.5)
    # the last bin is closed: 2.0 is in [2.0, 2.5]
    assert last["n"] == 1 and last["mean"] == 20.0 and math.isnan(last["se"])
    assert (lo["lo"], lo["hi"]) == (1.0, 1.5)


def test_landmark_overlays_draw_a_row_per_regressor_and_the_points_where_given():
    import matplotlib
    matplotlib.use("Agg")
    from ssl_lab.plotting import landmark_overlays
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    truth = torch.tensor([[[2.0, 3.0], [12.0, 3.0]]]).expand(4, -1, -1)
    preds = {"a": truth + 1, "b": truth - 1}
    fig = landmark_overlays(images, truth, preds, idx=[0, 3], titles=["x", "y"])
    axes = fig.axes
    assert len(axes) == 4 and axes[0].get_ylabel() == "a" and axes[2].get_ylabel() == "b"
    assert [ax.get_title() for ax in axes] == ["x", "y", "", ""]
    circles, crosses = axes[2].collections                       # row b, first image
    assert np.allclose(circles.get_offsets(), truth[0]) and np.allclose(crosses.get_offsets(), truth[0] - 1)


def test_near_rounding_by_hand():
    from ssl_lab.regression import near_rounding
    assert near_rounding(1.2349, 2, 1e-3) and not near_rounding(1.23, 2, 1e-3)      # 1.235 is 1e-4 away
    assert near_rounding(-0.0051, 2, 2e-4) and not near_rounding(-0.0051, 2, 5e-5)  # -0.005: 1e-4 away
    assert near_rounding(0.2501, 1, 1e-3) and not near_rounding(0.2501, 2, 1e-3)    # 0.25 rounds at 1 decimal
    assert not near_rounding(float("nan")) and not near_rounding(float("inf"))
    assert near_rounding({"a": [1.0, (2.0, 3.1249)]}, 2, 1e-3) and not near_rounding({"a": [1.0, "x", True]}, 2, 1e-3)


class _StubMaps:
    """A FrozenMaps stand-in: random 'float32' maps, and 'float64' ones 1e-6 away that count each
    image computed."""

    def __init__(self, n=40, c=3, side=6, seed=0):
        from types import SimpleNamespace
        g = torch.Generator().manual_seed(seed)
        self.fast = torch.randn(n, c, side, side, generator=g)
        self._exact = self.fast.double() * (1 + 1e-6 * torch.randn(self.fast.shape, generator=g, dtype=torch.float64))
        self.faces = SimpleNamespace(data={"image": torch.zeros(n, 3, 4 * side, 4 * side)},
                                     landmarks=torch.rand(n, 5, 2, generator=g) * 4 * side,
                                     visible=torch.ones(n, 5, dtype=torch.bool))
        self.faces.landmarks[:, 1, 0] += 8.0                                  # eyes apart: an IOD
        self.computed = 0

    def exact(self, idx=None):
        idx = list(range(len(self.fast))) if idx is None else [int(i) for i in idx]
        self.computed += len(idx)
        return self._exact[idx]


def test_settled_numbers_come_from_float64_maps_only_near_a_rounding_change():
    from ssl_lab.regression import SE_MARGIN, FaceErrors, settled
    reg = LandmarkRegressor(3, 5, num_intermediate=4, generator=torch.Generator().manual_seed(1))
    maps = _StubMaps()
    errors = FaceErrors(reg, maps)
    fast = errors.values.clone()
    assert settled(lambda e: 0.12 + 0 * float(e.nanmean()), errors) == 0.12            # far from 0.115 / 0.125
    assert not errors.exact and maps.computed == 0
    assert settled(lambda e: [1.0, {"x": 0.12501}], errors) == [1.0, {"x": 0.12501}]  # 1e-5 from 0.125: again
    assert errors.exact and maps.computed == 40
    again = FaceErrors(reg, maps)
    again.make_exact()
    assert torch.equal(errors.values, again.values) and not torch.equal(errors.values, fast)
    assert settled(lambda e, m: float(e.nanmean() + m.sum()), again, torch.zeros(3)) == float(again.values.nanmean())
    # a standard error's own margin: 1e-4 from 0.125 is near for a mean, not for it (SE_MARGIN 2e-5)
    third = FaceErrors(reg, maps)
    assert settled(lambda e: 0.1249, third, margin=SE_MARGIN) == 0.1249 and not third.exact
    assert settled(lambda e: 0.1249, third) == 0.1249 and third.exact


def test_median_recomputes_only_the_faces_near_it_and_equals_float64_s():
    from ssl_lab.regression import FACE_MARGIN, FaceErrors
    reg = LandmarkRegressor(3, 5, num_intermediate=4, generator=torch.Generator().manual_seed(1))
    maps = _StubMaps(n=41)
    errors = FaceErrors(reg, maps)
    median = errors.median()
    near = int(((errors.values - errors.values.nanmedian()).abs() <= 2 * FACE_MARGIN).sum())
    assert maps.computed == near < 41 and not errors.exact
    errors.make_exact()
    assert median == float(errors.values.nanmedian())
    assert errors.median() == median and maps.computed == near + 41          # exact already: nothing again


def test_frozen_maps_compute_float64_once_per_image_then_let_float32_go(home, one_thread):
    from ssl_lab.nets.backbones import dense_maps
    from ssl_lab.regression import FaceErrors, dense_features, eval_maps
    from ssl_lab import zoo
    maps = eval_maps("random hypercolumn", "aflw_m", "smoke")
    two = maps.exact([3, 1])
    by_hand = dense_maps(dense_features("random hypercolumn", "smoke", dtype=torch.float64),
                         maps.faces.data["image"][[3, 1]], dtype=torch.float64)
    assert two.dtype == torch.float64 and torch.equal(two, by_hand)
    assert torch.allclose(two.float(), maps.fast[[3, 1]], rtol=1e-4, atol=1e-5)
    full = maps.exact()
    assert torch.equal(full[[3, 1]], two) and maps.fast is None and maps.mean_norm() == mean_norm(full)
    reg = zoo.get("lead/regressor", "smoke", features="random hypercolumn", set="aflw_m")
    assert FaceErrors(reg, maps).exact                                  # float64's maps from the start


def test_random_projection_keeps_the_norm_in_expectation_and_is_the_64d_rows_map(home, one_thread):
    from ssl_lab.regression import dense_features, feature_dim, random_projection
    w = random_projection(960, 64, seed=0)
    assert w.shape == (64, 960) and torch.equal(w, random_projection(960, 64, seed=0))
    assert not torch.equal(w, random_projection(960, 64, seed=1))
    x = torch.randn(2000, 960, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ratio = ((x @ w.T).pow(2).sum(1) / x.pow(2).sum(1)).mean()      # E|Wx|^2 = |x|^2 (entries of variance 1/64)
    assert abs(float(ratio) - 1.0) < 0.1
    faces = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    full = dense_features("random hypercolumn", "smoke", dtype=torch.float64)(faces)
    low = dense_features("random hypercolumn / 64", "smoke", dtype=torch.float64)(faces)
    assert low.shape == (2, 64, *full.shape[-2:])
    assert feature_dim("random hypercolumn / 64", "smoke") == 64 and feature_dim("LEAD / 128", "smoke") == 128
    assert feature_dim("random hypercolumn", "smoke") == feature_dim("BYOL hypercolumn", "smoke") == full.shape[1]
    assert torch.allclose(low, torch.einsum("oc,bchw->bohw", random_projection(full.shape[1], 64), full))


def test_the_projected_byol_row_is_the_shipped_byol_hypercolumn_through_the_random_row_s_matrix(one_thread):
    from ssl_lab.regression import dense_features, feature_dim, random_projection
    faces = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    full = dense_features("BYOL hypercolumn", "small", dtype=torch.float64)(faces)
    low = dense_features("BYOL hypercolumn / 64", "small", dtype=torch.float64)(faces)
    assert feature_dim("BYOL hypercolumn / 64", "small") == 64 == low.shape[1]
    assert torch.allclose(low, torch.einsum("oc,bchw->bohw", random_projection(full.shape[1], 64, seed=0), full))
    assert not torch.allclose(low, dense_features("random hypercolumn / 64", "small", dtype=torch.float64)(faces))
