"""The ALS chapter's attribute classifiers and the renderer's linear attribute paths."""
import numpy as np
import pytest
import torch

from ssl_lab import attribute_classifier as ac
from ssl_lab.data.synthfaces import BINARY_ATTRIBUTES
from ssl_lab.metrics import als


@pytest.fixture(scope="module")
def paths():
    return ac.linear_paths(6, steps=4, size=32, seed=0)


def test_linear_paths_move_the_true_attributes_linearly(paths):
    assert paths["images"].shape == (6, 5, 3, 32, 32)
    assert paths["images"].min() >= -1 and paths["images"].max() <= 1
    ts = paths["ts"].numpy()
    for key in ("age", "smile"):
        v = paths[key].numpy()
        chord = v[:, :1] + ts[None] * (v[:, -1:] - v[:, :1])
        np.testing.assert_allclose(v, chord, atol=1e-6)           # exactly on the chord
        assert (np.abs(v[:, -1] - v[:, 0]) > 1e-3).any()             # and they do move
    # ALS of the true continuous values is zero: the calibration paths are linear by construction
    true = torch.stack([paths["age"], paths["smile"]], -1)
    assert als.als_from_scores(true, paths["ts"])["als"] == pytest.approx(0.0, abs=1e-12)


def test_linear_paths_keep_the_discrete_attributes(paths):
    b = paths["binary"]
    for name in ("male", "bangs", "beard", "eyeglasses", "black_hair", "blond_hair"):
        j = BINARY_ATTRIBUTES.index(name)
        assert (b[:, :, j] == b[:, :1, j]).all(), name
    # the end images differ (two identities), the path's images change gradually
    im = paths["images"]
    step = (im[:, 1:] - im[:, :-1]).abs().mean((2, 3, 4))
    ends = (im[:, -1] - im[:, 0]).abs().mean((1, 2, 3))
    assert (ends > 0.02).all() and (step < ends[:, None]).all()


def test_linear_paths_are_deterministic():
    a, b = ac.linear_paths(2, steps=2, seed=3), ac.linear_paths(2, steps=2, seed=3)
    assert torch.equal(a["images"], b["images"])
    assert not torch.equal(a["images"], ac.linear_paths(2, steps=2, seed=4)["images"])


class _Oracle(ac.AttributeClassifier):
    """Logits read off an image's mean brightness: +1 for every attribute when bright."""

    def forward(self, images):
        s = images.float().mean((1, 2, 3))
        return s[:, None].repeat(1, len(BINARY_ATTRIBUTES)) * 10


def test_held_out_report_by_hand():
    clf = _Oracle("test_resnet")
    bright = torch.full((4, 3, 8, 8), 230, dtype=torch.uint8)
    dark = torch.full((4, 3, 8, 8), 20, dtype=torch.uint8)
    images = torch.cat([bright, dark])
    labels = torch.zeros(8, len(BINARY_ATTRIBUTES))
    labels[:4] = 1                                                   # bright = positive
    labels[0, BINARY_ATTRIBUTES.index("beard")] = 0                  # one beard label wrong
    rep = ac.held_out_report(clf, images, labels)
    assert list(rep) == list(ac.ALS_ATTRIBUTES)
    assert rep["Smile"]["accuracy"] == 1.0 and rep["Smile"]["auc"] == 1.0
    assert rep["Beard"]["accuracy"] == pytest.approx(7 / 8)
    # 3 positives x 5 negatives: the 12 pairs against dark images are ordered right, the 3
    # against the mislabelled bright one are ties (half each): (12 + 1.5) / 15
    assert rep["Beard"]["auc"] == pytest.approx(13.5 / 15)
    assert rep["Smile"]["positive_rate"] == 0.5


def test_scores_pick_the_six_attributes_in_order():
    clf = ac.AttributeClassifier("test_resnet").eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        full = clf(x)
    cols = [BINARY_ATTRIBUTES.index(a) for a in ac.ALS_ATTRIBUTES.values()]
    torch.testing.assert_close(clf.scores(x, batch=2), full[:, cols])
    import copy
    s64 = copy.deepcopy(clf).double().scores(x)                        # float64 copy: float64 logits
    assert s64.dtype == torch.float64
    torch.testing.assert_close(s64.float(), full[:, cols], rtol=1e-4, atol=1e-4)


def test_fit_lowers_the_loss_on_a_learnable_attribute():
    torch.manual_seed(0)
    n = 128
    labels = torch.zeros(n, len(BINARY_ATTRIBUTES))
    labels[: n // 2] = 1
    images = torch.where(labels[:, :1, None, None].bool().expand(n, 3, 16, 16),
                         torch.tensor(200, dtype=torch.uint8), torch.tensor(40, dtype=torch.uint8))
    clf = ac.AttributeClassifier("test_resnet")
    hist = ac.fit(clf, images, labels, steps=30, batch_size=32, lr=3e-3)
    assert np.mean(hist[-5:]) < 0.5 * np.mean(hist[:3])


def test_linear_probe_reads_a_linear_feature_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(400, len(BINARY_ATTRIBUTES), generator=g) < 0.5).float()
    informative = labels * 2 - 1 + 0.3 * torch.randn(400, len(BINARY_ATTRIBUTES), generator=g)
    noise = torch.randn(400, 5, generator=g)
    auc = ac.linear_probe(informative[:300], labels[:300], informative[300:], labels[300:])
    assert list(auc) == list(ac.ALS_ATTRIBUTES) and min(auc.values()) > 0.99
    chance = ac.linear_probe(noise[:300], labels[:300], noise[300:], labels[300:])
    assert all(abs(v - 0.5) < 0.2 for v in chance.values())


def test_ridge_probe_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g)
    y = torch.stack([2 * x[:, 0] - x[:, 1],                   # exactly linear in the features
                     torch.randn(500, generator=g)], 1)     # independent of them
    r2 = ac.ridge_probe(x[:400], y[:400], x[400:], y[400:], ["linear", "noise"], alpha=1e-6)
    assert r2["linear"] == pytest.approx(1.0, abs=1e-9) and r2["noise"] < 0.05


def test_label_auc_by_hand():
    labels = torch.zeros(4, len(BINARY_ATTRIBUTES))
    young, grey = BINARY_ATTRIBUTES.index("young"), BINARY_ATTRIBUTES.index("gray_hair")
    labels[:, young] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    labels[:, grey] = torch.tensor([0.0, 0.0, 1.0, 0.0])         # one old face is grey
    # score = not grey: the two young (score 1) beat the grey old (0) and tie the other old (1)
    assert ac.label_auc(labels, "young", "gray_hair", sign=-1) == pytest.approx((2 + 2 * 0.5) / 4)
