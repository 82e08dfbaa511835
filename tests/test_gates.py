"""The learning gates, on hand-made tables."""
import pytest

from ssl_lab import gates



def test_stage1_gates_by_hand():
    t = {"BYOL": {"Different": 7.0}, "MoCo": {"Different": 9.0}, "random": {"Different": 10.0},
         "supervised": {"Different": 8.0}, "no features": {"Different": 7.5}, "7x7 pixel patches": {"Different": 12.0}}
    g = {r["gate"]: r for r in gates.stage1(t)}
    assert g["S1a BYOL"]["passed"] and g["S1a BYOL"]["bound"] == 8.0     # 7 <= 0.8 x 10
    assert not g["S1a MoCo"]["passed"]                                  # 9 > 8
    assert g["S1b (BYOL)"]["passed"] and g["S1b (BYOL)"]["bound"] == 7.5  # best 7 < min(7.5, 12)
    t["no features"]["Different"] = 6.0
    assert not {r["gate"]: r for r in gates.stage1(t)}["S1b (BYOL)"]["passed"]


def test_stage2_gate_by_hand():
    t = {"LEAD / 64": {"Different": 3.5}, "LEAD / 3840": {"Different": 3.0}}
    assert gates.stage2(t)[0]["passed"]                                 # 3.5 <= 3.6
    t["LEAD / 64"]["Different"] = 3.7
    assert not gates.stage2(t)[0]["passed"]


def test_regression_gate_by_hand():
    from ssl_lab.gates import regression
    table = {"LEAD / 64": {"MAFL": 4.0, "300W": 9.0},
             "mean shape": {"MAFL": 8.0, "300W": 8.5},
             "random hypercolumn": {"MAFL": 5.0}}
    g = {r["gate"]: r for r in regression(table)}
    assert g["R MAFL"]["passed"] and g["R MAFL"]["bound"] == 5.0          # the lower yardstick binds
    assert not g["R 300W"]["passed"] and g["R 300W"]["bound"] == 8.5
    assert "not measured: random hypercolumn" in g["R 300W"]["rule"]     # named, not dropped
    with pytest.raises(ValueError, match="no yardstick"):
        regression({"LEAD / 64": {"AFLW_M": 1.0}, "mean shape": {}})


def test_gan_warmup_gates_by_hand():
    curve = [{"kimg": 0, "FD_x": 90.0}, {"kimg": 30, "FD_x": 40.0}, {"kimg": 60, "FD_x": 12.0}]
    g = {r["gate"]: r for r in gates.gan_warmup(0.5, 0.19, curve, "FD_x")}
    assert g["G1 precision"]["passed"] and g["G1 precision"]["bound"] == 0.5     # at the bound: passes
    assert not g["G2 recall"]["passed"] and g["G2 recall"]["value"] == 0.19
    assert g["G3 FD falls"]["passed"] and g["G3 FD falls"]["bound"] == 40.0
    rising = [{"kimg": 0, "FD_x": 90.0}, {"kimg": 30, "FD_x": 40.0}, {"kimg": 60, "FD_x": 41.0}]
    assert not gates.gan_warmup(0.9, 0.9, rising, "FD_x")[2]["passed"]
    with pytest.raises(ValueError, match="at least two snapshots"):
        gates.gan_warmup(0.9, 0.9, rising[:2], "FD_x")


def test_attribute_classifier_gates_by_hand():
    auc = {"Smile": 0.95, "Age": 0.89}
    g = {r["gate"]: r for r in gates.attribute_classifiers(auc, {"Smile": 0.97, "Age": 0.7})}
    assert g["A1 Smile"]["passed"] and not g["A1 Age"]["passed"]
    # mean 0.92 against the pixels' 0.835: passes although Smile alone is below its pixel probe
    assert g["A2 mean AUC"]["passed"] and g["A2 mean AUC"]["value"] == 0.92
    assert not gates.attribute_classifiers({"Smile": 0.9}, {"Smile": 0.9})[-1]["passed"]   # a tie fails
    with pytest.raises(ValueError, match="different attributes"):
        gates.attribute_classifiers(auc, {"Smile": 0.9})


def test_feature_standin_gates_by_hand():
    g = gates.feature_standins({"ViT DINO": 0.8, "DeiT": 0.7, "ViT (RandInit)": 0.7})
    assert [r["passed"] for r in g] == [True, False] and g[1]["bound"] == 0.7       # a tie fails
    with pytest.raises(ValueError, match="DeiT"):
        gates.feature_standins({"ViT DINO": 0.8, "ViT (RandInit)": 0.7})
